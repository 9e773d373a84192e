"""Tiny tokenizers and text encoders for the built-in models, built here (no download).

The tokenizer is a word-level ``tokenizers`` model over :data:`data.VOCABULARY`, wrapped in
``PreTrainedTokenizerFast`` so stock pipelines call it like a real one and it saves with the
pipeline. The encoders are real ``transformers`` classes (CLIP text, T5, UMT5) with a few
thousand parameters, trained jointly with each denoiser.
"""

from __future__ import annotations

import torch

from .data import VOCABULARY

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
MAX_LENGTH = 16


def build_tokenizer(max_length: int = MAX_LENGTH):
    """A word-level ``PreTrainedTokenizerFast``: lower-cases, splits on whitespace, adds BOS/EOS."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + VOCABULARY)}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]",
        pair="[BOS] $A [EOS] $B [EOS]",
        special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="[BOS]",
        eos_token="[EOS]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        model_max_length=max_length,
    )


def vocab_size() -> int:
    return len(SPECIAL_TOKENS) + len(VOCABULARY)


def clip_text_encoder(
    hidden: int = 64, layers: int = 2, with_projection: bool = False, projection_dim: int = 32, seed: int = 0
) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=vocab_size(),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        max_position_embeddings=MAX_LENGTH,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


def t5_text_encoder(d_model: int = 64, layers: int = 2, umt5: bool = False, seed: int = 0) -> torch.nn.Module:
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    kwargs = dict(
        vocab_size=vocab_size(),
        d_model=d_model,
        d_kv=16,
        d_ff=d_model * 2,
        num_layers=layers,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        pad_token_id=0,
        eos_token_id=3,
        decoder_start_token_id=0,
        dropout_rate=0.0,
    )
    torch.manual_seed(seed)
    if umt5:
        return UMT5EncoderModel(UMT5Config(**kwargs))
    return T5EncoderModel(T5Config(**kwargs))
