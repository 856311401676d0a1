"""Reading a BERT-style encoder's feed-forward blocks (glai.transformer.blocks; SPEC 13, issue 28): the ReLU-switched
block as an MLP, its exact conversion (paper Theorem 1) inside the block's residual and LayerNorm, and the refusal
of a model whose blocks cannot be read. A tiny random BERT and GPT-2 are built here, offline."""

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

import glai
from glai.transformer import ResidualFFN, block_parameters, read_ffn_blocks, relu_mlp


def _bert(layers=3, d=16, d_ff=40):
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=d, intermediate_size=d_ff, num_hidden_layers=layers, num_attention_heads=2,
                     vocab_size=60, max_position_embeddings=32)
    return BertModel(cfg).eval()


def test_the_last_blocks_are_read_in_layer_order():
    model = _bert()
    blocks = read_ffn_blocks(model, 2)
    assert [b.layer for b in blocks] == [1, 2] and (blocks[0].d, blocks[0].d_ff) == (16, 40)
    assert blocks[1].fc1 is model.encoder.layer[2].intermediate.dense  # the model's modules, not copies
    assert block_parameters(16, 40) == sum(p.numel() for b in blocks[:1] for p in (*b.fc1.parameters(),
                                                                                     *b.fc2.parameters()))
    assert block_parameters(384, 1536) == 2 * 384 * 1536 + 1536 + 384  # all-MiniLM-L6-v2's block


def test_the_relu_switched_block_is_the_models_block_with_relu():
    """ResidualFFN(relu_mlp(block)) is the layer's own feed-forward output once its activation is ReLU."""
    model = _bert()
    (block,) = read_ffn_blocks(model, 1)
    layer = model.encoder.layer[-1]
    a = torch.randn(23, 16)  # 23 tokens, odd on purpose
    ours = ResidualFFN(relu_mlp(block), block).eval()(a)
    layer.intermediate.intermediate_act_fn = nn.ReLU()
    with torch.no_grad():
        theirs = layer.feed_forward_chunk(a)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # GELU and ReLU differ: the switch is a change of the model (its cost is measured by the study, SPEC 13)
    layer.intermediate.intermediate_act_fn = nn.GELU()
    with torch.no_grad():
        assert not torch.allclose(layer.feed_forward_chunk(a), theirs, atol=1e-4)


def test_the_exact_conversion_of_a_block_is_the_block():
    """Theorem 1 on a Transformer block: every path kept, the GLAI head over the frozen ReLU selector computes the
    ReLU-switched block exactly, inside the same residual and LayerNorm; pruned to the block's own budget it keeps
    exactly that many trainable values."""
    (block,) = read_ffn_blocks(_bert(), 1)
    mlp = relu_mlp(block)
    tokens = torch.randn(57, 16)
    head = glai.convert(mlp, tokens, estimator="sparse", backend="torch")
    with torch.no_grad():
        torch.testing.assert_close(ResidualFFN(head, block)(tokens), ResidualFFN(mlp, block)(tokens),
                                   rtol=1e-4, atol=1e-5)
    budget = block_parameters(block.d, block.d_ff)
    pruned = glai.convert(mlp, tokens, keep=budget - block.d, backend="torch")  # + the d output biases
    assert sum(p.numel() for p in pruned.estimator.parameters() if p.requires_grad) == budget


def test_a_model_without_bert_style_blocks_is_refused_naming_what_was_expected():
    gpt2 = GPT2Model(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=60, n_positions=32))
    with pytest.raises(ValueError, match=r"GPT2Model: no encoder.layer list.*encoder.layer\[i\].intermediate.dense.*"
                                         r"Fix: backbone="):
        read_ffn_blocks(gpt2)
    with pytest.raises(ValueError, match=r"ffn.blocks=4: BertModel has 3 layers. Fix: 1 <= ffn.blocks <= 3"):
        read_ffn_blocks(_bert(), 4)
    broken = _bert()
    del broken.encoder.layer[2].output.LayerNorm
    with pytest.raises(ValueError, match=r"layer 2 \(BertLayer\) lacks output.LayerNorm"):
        read_ffn_blocks(broken)
