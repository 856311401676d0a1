"""Family T: GLAI inside a Transformer's feed-forward blocks (SPEC 13; issue 28). This package reads a BERT-style
encoder's blocks (:mod:`glai.transformer.blocks`); the token cache, the ``ffn_*`` heads and the runner's dispatch
are still to come (issue 28)."""

from glai.transformer.blocks import FFNBlock, ResidualFFN, block_parameters, read_ffn_blocks, relu_mlp

__all__ = ["FFNBlock", "ResidualFFN", "block_parameters", "read_ffn_blocks", "relu_mlp"]
