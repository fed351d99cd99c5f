"""The one generation engine: KV cache, continuous batching, the sampler and streaming text.

Every caller generates through it: ``murmur generate`` and the library call (:func:`generate`,
:func:`continue_post`), training's sample posts, the demo, the HTTP server, and the features built on
the model (search answers, the assistant, ad copy). The same prompt, seed and settings give the same
tokens through each of them.

- ``engine.py``: :class:`Engine` (a background step loop for servers, or :meth:`Engine.run` in the
  calling thread), requests, events and the errors a caller may see;
- ``sampling.py``: :class:`SamplingParams` and the vectorised sampler;
- ``detokenize.py``: token ids -> text, one token at a time, UTF-8 and stop-string safe;
- ``generate.py``: the library calls over a model (no server, no thread);
- ``http.py``: ``current_engine``, the FastAPI dependency through which routers mounted on the
  server reach the engine (needs the ``serve`` extra; nothing else here imports a web framework).
"""

from murmur.engine.engine import (
    Completion,
    ContextLengthError,
    Engine,
    EngineClosedError,
    EngineNotReadyError,
    Event,
    QueueFullError,
    Request,
)
from murmur.engine.generate import continue_post, generate, post_prompt
from murmur.engine.sampling import SamplingParams

__all__ = ["Completion", "ContextLengthError", "Engine", "EngineClosedError", "EngineNotReadyError", "Event",
           "QueueFullError", "Request", "SamplingParams", "continue_post", "generate", "post_prompt"]
