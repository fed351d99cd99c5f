"""Chat: the conversation format (``template``) and, later, supervised fine-tuning on it."""
