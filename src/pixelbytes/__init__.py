"""pixelbytes: unified text + pixel-art + audio/action sequence models on the Hugging Face stack.

``import pixelbytes`` registers ``PxByConfig`` / ``PxBySequenceModel`` / ``ActionPixelBytesTokenizer`` with
``AutoConfig``, ``AutoModel``, ``AutoModelForCausalLM`` and ``AutoTokenizer`` (so it imports torch and
transformers) but none of the optional heavy dependencies (datasets, accelerate, scipy, soundfile, gradio).
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

from .codecs import decode_stream, encode_audio, encode_image, encode_text, save_image, save_wav
from .configuration_pixelbytes import PxByConfig
from .generation_pixelbytes import (
    AudioLogitsProcessor,
    BlockEndStoppingCriteria,
    ImageGridLogitsProcessor,
    PxByCache,
    PxByIteratorStreamer,
    PxByStreamer,
    generate_audio,
    generate_image,
)
from .layout import BatchLayoutTracker, LayoutTracker, batch_context_ids, batch_windows, stream_contexts
from .modeling_pixelbytes import PxByModelOutput, PxBySequenceModel
from .tokenization_pixelbytes import ActionPixelBytesTokenizer, MultimodalOutput
from .vocabulary import PxByVocabulary, control_vocabulary, default_vocabulary, v1_vocabulary

__version__ = "0.1.0.dev0"

AutoConfig.register(PxByConfig.model_type, PxByConfig, exist_ok=True)
AutoModel.register(PxByConfig, PxBySequenceModel, exist_ok=True)
AutoModelForCausalLM.register(PxByConfig, PxBySequenceModel, exist_ok=True)
AutoTokenizer.register(PxByConfig, tokenizer_class=ActionPixelBytesTokenizer, exist_ok=True)

__all__ = [
    "ActionPixelBytesTokenizer",
    "AudioLogitsProcessor",
    "BatchLayoutTracker",
    "BlockEndStoppingCriteria",
    "ImageGridLogitsProcessor",
    "LayoutTracker",
    "MultimodalOutput",
    "PxByCache",
    "PxByConfig",
    "PxByIteratorStreamer",
    "PxByModelOutput",
    "PxBySequenceModel",
    "PxByStreamer",
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
    "generate_audio",
    "generate_image",
    "save_image",
    "save_wav",
    "stream_contexts",
    "v1_vocabulary",
]
