from .prompt_compressor import PromptCompressor

__all__ = ["PromptCompressor"]
