"""pixelbytes: unified text + pixel-art + audio/action sequence models on the Hugging Face stack.

``import pixelbytes`` imports torch and transformers (it registers the Auto classes) but none of the
optional heavy dependencies (datasets, accelerate, scipy, soundfile, gradio).
"""

from .codecs import decode_stream, encode_audio, encode_image, encode_text, save_image, save_wav
from .layout import BatchLayoutTracker, LayoutTracker, batch_context_ids, batch_windows, stream_contexts
from .tokenization_pixelbytes import ActionPixelBytesTokenizer, MultimodalOutput
from .vocabulary import PxByVocabulary, control_vocabulary, default_vocabulary

__version__ = "0.1.0.dev0"

__all__ = [
    "ActionPixelBytesTokenizer",
    "BatchLayoutTracker",
    "LayoutTracker",
    "MultimodalOutput",
    "PxByVocabulary",
    "__version__",
    "batch_context_ids",
    "batch_windows",
    "control_vocabulary",
    "decode_stream",
    "default_vocabulary",
    "encode_audio",
    "encode_image",
    "encode_text",
    "save_image",
    "save_wav",
    "stream_contexts",
]
