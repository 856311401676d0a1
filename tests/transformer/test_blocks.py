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


def _tokens(b=5, length=9, d=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(b, length, d, generator=g)
    lengths = torch.tensor([9, 4, 1, 7, 2])[:b]
    return a, torch.arange(length)[None, :] < lengths[:, None]


@pytest.mark.parametrize("kind", ["ffn_mlp", "ffn_relu", "ffn_glai", "linear"])
def test_every_ffn_head_has_the_blocks_budget_and_ignores_padding(kind):
    from glai.transformer.model import build_ffn_head, trainable_parameters

    (block,) = read_ffn_blocks(_bert(), 1)
    a, mask = _tokens()
    head = build_ffn_head(kind, block, n_classes=3, tokens=a[mask], backend="torch").eval()
    classifier = 16 * 3 + 3
    budget = 0 if kind == "linear" else block_parameters(16, 40)
    assert trainable_parameters(head) == budget + classifier  # ffn_glai's estimator: exactly the block's count
    logits = head(a, mask)
    assert logits.shape == (5, 3)
    noisy = a.clone()
    noisy[~mask] = 1e3  # padding changes nothing
    torch.testing.assert_close(head(noisy, mask), logits)
    logits.sum().backward()
    assert all((p.grad is not None) == p.requires_grad for p in head.parameters())
    with pytest.raises(ValueError, match="no valid token"):
        head(a, torch.zeros_like(mask))


def test_the_unpruned_glai_block_classifies_as_the_relu_block():
    """Theorem 1 through the whole head: every path kept, ffn_glai's logits are ffn_relu's (same classifier)."""
    from glai.transformer.model import TokenClassifier, build_ffn_head

    (block,) = read_ffn_blocks(_bert(), 1)
    a, mask = _tokens()
    relu = build_ffn_head("ffn_relu", block, 3).eval()
    exact = TokenClassifier(ResidualFFN(glai.convert(relu_mlp(block), a[mask], backend="torch"), block), 16, 3).eval()
    exact.classifier.load_state_dict(relu.classifier.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(exact(a, mask), relu(a, mask), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="family T's heads"):
        build_ffn_head("ffn_moe", block, 3)


def test_a_stack_converts_each_block_on_the_tokens_it_sees():
    """convert_blocks: each block pruned to its own budget; the upper block's Omega is the output of the converted
    lower block and the frozen attention, at every valid token (glai.transformer.model, ffn.blocks > 1)."""
    from glai.transformer.model import FrozenAttention, Tokens, convert_blocks

    model = _bert()
    blocks = read_ffn_blocks(model, 2)
    attention = FrozenAttention(blocks[1].attention, model.config)
    torch.manual_seed(3)
    a, mask = torch.randn(5, 7, 16), torch.ones(5, 7, dtype=torch.bool)
    mask[1, 4:], mask[3, 2:] = False, False
    a = a * mask.unsqueeze(-1)
    inners = convert_blocks(blocks, [attention], Tokens(a, mask), a[mask][:9], backend="torch")
    budget = block_parameters(16, 40) - 16
    assert [int(i.conversion.kept.values.numel()) for i in inners] == [budget, budget]
    assert [g.shape[0] for g in inners[0].conversion.gates] == [int(mask.sum()), 9]
    with torch.no_grad():
        h = torch.zeros_like(a)
        h[mask] = ResidualFFN(inners[0], blocks[0]).eval()(a[mask])
        upper = attention(h, mask)[mask]
    expected = glai.convert(relu_mlp(blocks[1]), upper, keep=budget, backend="torch")
    assert torch.equal(inners[1].conversion.gates[0], expected.conversion.gates[0])


def test_a_batch_of_tokens_finds_its_gates_among_its_sets_rows():
    """Tokens keep a GLAI head's cached gates once per valid token of the set (issue 29): a batch (tensor index,
    slice, a batch of a batch) gets exactly the gates of its valid tokens in ``a[mask]`` order, the rows scattered
    [N, L, n_gates] would give, without copying the set's; a set's own gates come back as they are."""
    from glai.transformer.model import Tokens

    g = torch.Generator().manual_seed(0)
    n, length, n_gates = 7, 9, 5
    mask = torch.arange(length) < torch.randint(1, length + 1, (n, 1), generator=g)
    a = torch.randn(n, length, 3, generator=g) * mask.unsqueeze(-1)
    valid = (torch.rand(int(mask.sum()), n_gates, generator=g) < 0.5).to(torch.uint8)
    dense = torch.zeros(n, length, n_gates, dtype=torch.uint8)
    dense[mask] = valid
    tokens = Tokens(a, mask, valid)
    assert tokens.valid_gates() is valid
    for idx in (torch.tensor([5, 0, 3]), slice(2, 6), torch.tensor([6])):
        batch = tokens[idx]
        assert batch.gates is valid  # shared, not copied
        assert torch.equal(batch.valid_gates(), dense[idx][mask[idx]])
        assert torch.equal(batch.valid(), a[idx][mask[idx]])
    sub = tokens[torch.tensor([4, 1, 2, 6])][torch.tensor([2, 0])]  # rows 2 and 4 of the set
    assert torch.equal(sub.valid_gates(), dense[[2, 4]][mask[[2, 4]]])
    assert Tokens(a, mask)[torch.tensor([1])].valid_gates() is None
    with pytest.raises(ValueError, match="no cached gates"):
        Tokens(a, mask).gate_rows()
