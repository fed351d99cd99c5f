"""Chat: the conversation format (``template``), conversation data (``data``) and fine-tuning (``sft``)."""
