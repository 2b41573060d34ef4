"""LongNet: dense equivalence, padding invariance, hand-computed dilation offsets, config round trip."""

from __future__ import annotations

import math

import pytest
import torch

from breastgpt.model.longnet import LongNetConfig, LongNetEncoder, dilated_attention, sincos_2d


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny tensors: on a shared 2-core machine, thread hand-offs cost more than the arithmetic.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _dense(q, k, v, mask):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask[:, None, None, :], -torch.inf)
    return torch.softmax(scores, dim=-1) @ v


def _qkv(b=2, h=4, n=37, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g) for _ in range(3)]


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("segment", [37, 64])
def test_one_undilated_segment_is_dense_attention(fused, segment):
    q, k, v = _qkv()
    mask = torch.ones(2, 37, dtype=torch.bool)
    mask[1, 30:] = False
    out = dilated_attention(q, k, v, mask, ((segment, 1),), fused=fused)
    assert torch.allclose(out, _dense(q, k, v, mask), atol=1e-5, rtol=0)


@pytest.mark.parametrize("fused", [True, False])
def test_extra_padding_does_not_change_real_positions(fused):
    segments = ((8, 1), (16, 2), (32, 4))
    q, k, v = _qkv(n=37)
    mask = torch.ones(2, 37, dtype=torch.bool)
    mask[0, 33:] = False
    base = dilated_attention(q, k, v, mask, segments, fused=fused)
    pad = 29
    qp, kp, vp = (torch.cat([t, 100 * torch.randn(2, 4, pad, 8)], dim=2) for t in (q, k, v))
    maskp = torch.cat([mask, torch.zeros(2, pad, dtype=torch.bool)], dim=1)
    padded = dilated_attention(qp, kp, vp, maskp, segments, fused=fused)
    assert torch.allclose(padded[0, :, :33], base[0, :, :33], atol=1e-6, rtol=0)
    assert torch.allclose(padded[1, :, :37], base[1, :, :37], atol=1e-6, rtol=0)


def test_dilation_offsets_per_head_group_by_hand():
    # q = 0: every kept key gets the same score, so each output is a plain mean of the kept values.
    v = torch.tensor([1.0, 2.0, 4.0, 8.0]).view(1, 1, 4, 1).repeat(1, 2, 1, 1)
    q = torch.zeros_like(v)
    out = dilated_attention(q, q, v, None, ((4, 2),), fused=False)[0, :, :, 0]
    # head 0 (group 0) keeps offsets 0, 2; head 1 (group 1) keeps 1, 3; uncovered positions get 0.
    assert out.tolist() == [[2.5, 0.0, 2.5, 0.0], [0.0, 5.0, 0.0, 5.0]]
    merged = dilated_attention(q, q, v, None, ((2, 1), (4, 2)), fused=False)[0, :, :, 0]
    # position 0, head 0: both branches see 2 keys (lse = log 2 each): 0.5·mean(1,2) + 0.5·mean(1,4).
    expected = [[0.5 * 1.5 + 0.5 * 2.5, 1.5, 0.5 * 6.0 + 0.5 * 2.5, 6.0],
                [1.5, 0.5 * 1.5 + 0.5 * 5.0, 6.0, 0.5 * 6.0 + 0.5 * 5.0]]
    assert torch.allclose(merged, torch.tensor(expected), atol=1e-6)
    assert torch.allclose(dilated_attention(q, q, v, None, ((2, 1), (4, 2)), fused=True)[0, :, :, 0],
                          torch.tensor(expected), atol=1e-6)


def test_merge_equals_softmax_over_the_union_of_branch_keys():
    q, k, v = _qkv(b=1, h=2, n=8, d=4, seed=3)
    out = dilated_attention(q, k, v, None, ((4, 1), (8, 2)), fused=False)
    scores = (q @ k.transpose(-1, -2))[0] / 2.0  # [H, N, N]
    for head in range(2):
        for i in range(8):
            keys = [j for j in range(8) if j // 4 == i // 4]  # branch 1: own segment of 4
            if i % 2 == head % 2:  # branch 2: this head's offset covers i
                keys += [j for j in range(8) if j % 2 == head % 2]
            w = torch.softmax(scores[head, i, keys], dim=0)
            expected = w @ v[0, head, keys]
            assert torch.allclose(out[0, head, i], expected, atol=1e-5)


def test_fused_and_plain_paths_agree_and_gradients_flow():
    q, k, v = _qkv(n=50)
    mask = torch.ones(2, 50, dtype=torch.bool)
    mask[1, 41:] = False
    segments = ((16, 1), (32, 2), (64, 4))
    fused = dilated_attention(q, k, v, mask, segments, fused=True)
    q.requires_grad_(True)
    plain = dilated_attention(q, k, v, mask, segments)  # grad enabled -> plain ops
    assert torch.allclose(fused, plain.detach(), atol=1e-5, rtol=0)
    plain[mask[:, None, :, None].expand_as(plain)].sum().backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0


def _tiny_config(**kw):
    base = dict(width=16, depth=3, heads=4, ffn=32, segments=((8, 1), (16, 2), (32, 4)), input_dim=12)
    return LongNetConfig(**{**base, **kw})


def test_encoder_outputs_one_tensor_per_layer_and_ignores_padding():
    torch.manual_seed(0)
    enc = LongNetEncoder(_tiny_config()).eval()
    feats = torch.randn(1, 30, 12)
    coords = torch.stack([torch.arange(30) % 6, torch.arange(30) // 6], dim=1)[None].float() * 512 + 4096
    with torch.no_grad():
        outs = enc(feats, coords, tile_size=512)
        padded = enc(torch.cat([feats, torch.randn(1, 9, 12)], 1),
                     torch.cat([coords, torch.zeros(1, 9, 2)], 1),
                     torch.cat([torch.ones(1, 30), torch.zeros(1, 9)], 1).bool(), tile_size=512)
    assert len(outs) == 3 and all(o.shape == (1, 30, 16) for o in outs)
    for a, b in zip(outs, padded):
        assert torch.allclose(a, b[:, :30], atol=1e-5, rtol=0)
    # Positions matter when on, and only the grid (not the slide's offset on the glass) matters.
    with torch.no_grad():
        shifted = enc(feats, coords + 512 * 7, tile_size=512)[-1]
        off = LongNetEncoder(_tiny_config(positional="none"))
        off.load_state_dict(enc.state_dict())
        no_pos = off.eval()(feats, coords, tile_size=512)[-1]
    assert torch.allclose(shifted, outs[-1], atol=1e-5)
    assert not torch.allclose(no_pos, outs[-1], atol=1e-3)


def test_sincos_grid_values():
    enc = sincos_2d(torch.tensor([[0.0, 0.0], [1.0, 2.0]]), 8)
    assert enc[0].tolist() == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    expected = [math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01),
                math.sin(2), math.sin(0.02), math.cos(2), math.cos(0.02)]
    assert torch.allclose(enc[1], torch.tensor(expected), atol=1e-6)


def test_encoder_trains_end_to_end():
    torch.manual_seed(1)
    enc = LongNetEncoder(_tiny_config(input_dim=16))  # input_dim == width: no input projection
    assert isinstance(enc.input_proj, torch.nn.Identity)
    feats = torch.randn(2, 20, 16)
    target = torch.randn(2, 20, 16)
    opt = torch.optim.SGD(enc.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        loss = (enc(feats)[-1] - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_config_round_trip_and_errors():
    cfg = LongNetConfig()
    assert cfg.segments == ((512, 1), (1024, 2), (2048, 4)) and cfg.width == 768 and cfg.heads == 8
    data = cfg.to_dict()
    assert data["segments"] == [[512, 1], [1024, 2], [2048, 4]]
    assert LongNetConfig.from_dict(data) == cfg
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['dropout'\]; known keys are \['depth'"):
        LongNetConfig.from_dict({**data, "dropout": 0.1})
    with pytest.raises(ValueError, match="positional"):
        LongNetConfig(positional="rope")
    with pytest.raises(ValueError, match="multiple of the dilation"):
        LongNetConfig(segments=((10, 4),))
    with pytest.raises(ValueError, match="divisible by heads"):
        LongNetConfig(width=10, heads=4, positional="none")


def test_standardised_inputs_are_folded_into_the_projection_exactly():
    torch.manual_seed(0)
    cfg = LongNetConfig(width=16, depth=1, heads=2, ffn=32, segments=[[8, 1]], input_dim=6, positional="none")
    enc = LongNetEncoder(cfg).double()
    feats = 5.0 + 0.01 * torch.randn(1, 9, 6, dtype=torch.float64)  # a large constant, small variation
    feats[..., 5] = 3.0  # one constant dimension: std 0, scaled by the floor, never divided by 0
    mean, std = feats[0].mean(0), feats[0].std(0, unbiased=False)
    reference = LongNetEncoder(cfg).double()
    reference.load_state_dict(enc.state_dict())
    enc.standardise_inputs(mean, std)
    floored = std.clamp_min(float(std.median()) * 0.05)
    expected = reference(((feats - mean) / floored))[-1]
    assert torch.allclose(enc(feats)[-1], expected, atol=1e-10)
    assert torch.isfinite(enc.input_proj.weight).all()
    with pytest.raises(ValueError, match="shape"):
        enc.standardise_inputs(mean[:3], std[:3])


def test_position_code_is_added_with_its_gain():
    """The sin-cos code enters scaled by `positional_scale` (unscaled it swamped the projected features)."""
    coords = torch.tensor([[[3, 5], [4, 5], [5, 5], [3, 6], [4, 6]]]).float()
    mask = torch.ones(1, 5, dtype=torch.bool)
    code = sincos_2d(coords - coords.amin(dim=1, keepdim=True), 16)  # origin at the first tile
    for gain in (0.1, 1.0):
        enc = LongNetEncoder(_tiny_config(positional_scale=gain))
        assert torch.allclose(enc._positions(coords, mask, None), gain * code)
    assert LongNetConfig().positional_scale == 0.1
    assert LongNetConfig.from_dict(LongNetConfig(positional_scale=0.3).to_dict()).positional_scale == 0.3
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="positional_scale"):
            LongNetConfig(positional_scale=bad)
