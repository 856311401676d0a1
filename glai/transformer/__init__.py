"""Family T: GLAI inside a Transformer's feed-forward blocks (docs/method.md, Family T). This package reads a BERT-style
encoder's blocks (:mod:`glai.transformer.blocks`), builds the heads that differ only in the last block
(:mod:`glai.transformer.model`: ``ffn_mlp``, ``ffn_relu``, ``ffn_lora``, ``ffn_glai``, ``linear``) and trains one on
cached tokens (:mod:`glai.transformer.train`); the tokens come from :mod:`glai.data.tokens`, the dispatch from the
runner."""

from glai.transformer.blocks import FFNBlock, ResidualFFN, block_parameters, read_ffn_blocks, relu_mlp
from glai.transformer.model import FFN_HEADS, TokenClassifier, Tokens, build_ffn_head, trainable_parameters

__all__ = ["FFN_HEADS", "FFNBlock", "ResidualFFN", "TokenClassifier", "Tokens", "block_parameters", "build_ffn_head",
           "read_ffn_blocks", "relu_mlp", "trainable_parameters"]
