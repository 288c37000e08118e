"""How fast the LivePortrait render (warping module + SPADE decoder, official sizes, batch 1, fp32) can get on this
CPU without changing its outputs: where its time goes, how close its convolutions run to the machine's matmul peak,
and what the exact rewrites that need fewer multiplications save on its own layer shapes.

    python benchmarks/bench_render_floor.py [--repeats 2]

It prints: the render's time and the convolutions' share of it (``torch.profiler``), their multiply-accumulates
(counted from the layers' shapes) and the rate they run at, beside a large fp32 matmul's rate on the same threads;
then, for each rewrite, the direct layer and the rewrite on the official shapes, the largest difference of their
outputs, and how often that layer occurs in one render; last, the render time those savings would leave.

The rewrites are prototypes for this measurement, not part of pctalk (the eager networks stay bit-compatible with the
public code):

- **polyphase**: a nearest 2x/4x upsampling followed by a 3x3 convolution (SPADE's ``mlp_shared`` on the upsampled
  segmentation in ``up_0`` / ``up_1``; its three copies in a block share the input, so they run as one) equals one
  convolution at the low resolution with a 2x2 kernel per output phase (the taps that land on the same input pixel
  summed): 4 instead of 9 multiplies an output.
- **overlap-save FFT**: the dense motion network's 7x7x7 ``mask`` convolution (142 -> 22 channels on 16x64x64) in
  24^3 tiles, the weights' spectrum computed once (frozen weights).
- **Winograd F(4x4, 3x3)**: a 3x3 convolution as 36 matrix products of the transformed tiles (2.25x fewer multiplies
  per output than F(2x2, 3x3), 4x fewer than direct), filter transform computed once.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from common import machine, timeit


# -- the rewrites ------------------------------------------------------------------------------------------------
def _phases(scale: int, k: int) -> tuple[torch.Tensor, list[int], int, int]:
    """For a nearest ``scale``x upsampling then a ``k``-tap correlation (padding k // 2): ``M (scale, K, k)``
    mapping each tap to the low-resolution offset it reads for each output phase, the phases' first offsets, and
    the left / right padding of the low-resolution input."""
    offsets = [[(a + t - k // 2) // scale for t in range(k)] for a in range(scale)]
    lo = [o[0] for o in offsets]
    taps = max(o[-1] - o[0] + 1 for o in offsets)
    m = torch.zeros(scale, taps, k, dtype=torch.float64)
    for a, row in enumerate(offsets):
        for t, d in enumerate(row):
            m[a, d - lo[a], t] = 1
    return m, lo, -min(lo), max(first + taps - 1 for first in lo)


def polyphase_weight(weight: torch.Tensor, scale: int) -> torch.Tensor:
    """``(Cout, Cin, k, k)`` -> ``(scale², Cout, Cin, K, K)``, the per-phase kernels (computed once)."""
    m, *_ = _phases(scale, weight.shape[-1])
    w = torch.einsum("ajt,bku,oitu->aboijk", m, m, weight.double()).to(weight.dtype)
    return w.reshape(scale * scale, *w.shape[2:])


def polyphase_conv(x: torch.Tensor, phased: torch.Tensor, bias: torch.Tensor, scale: int, k: int) -> torch.Tensor:
    """``conv2d(interpolate(x, scale_factor=scale), weight, bias, padding=k // 2)`` at ``x``'s resolution:
    ``(B, Cin, H, W)`` -> ``(B, Cout, scale H, scale W)``."""
    _, lo, left, right = _phases(scale, k)
    b, _, h, w = x.shape
    cout = phased.shape[1]
    z = F.conv2d(F.pad(x, (left, right, left, right)), phased.reshape(-1, *phased.shape[2:]), bias.repeat(scale**2))
    z = z.view(b, scale, scale, cout, *z.shape[-2:])
    out = x.new_empty(b, cout, h, scale, w, scale)
    for i in range(scale):
        for j in range(scale):
            r, c = lo[i] + left, lo[j] + left
            out[:, :, :, i, :, j] = z[:, i, j, :, r : r + h, c : c + w]
    return out.view(b, cout, h * scale, w * scale)


TILE = 24  # overlap-save FFT size per dimension


def fft_plan(size: int, k: int) -> tuple[int, int, int]:
    """FFT size, valid outputs per tile and tiles along one dimension."""
    if size + k - 1 <= TILE:
        return size + k - 1, size, 1
    m = TILE - k + 1
    return TILE, m, -(-size // m)


def fft_spectrum(weight: torch.Tensor, dims: tuple[int, int, int]) -> torch.Tensor:
    """The correlation kernel's spectrum ``(F, Cout, Cin)`` for inputs of spatial size ``dims`` (computed once)."""
    ns = [fft_plan(d, weight.shape[-1])[0] for d in dims]
    s = torch.fft.rfftn(weight, s=ns, dim=(-3, -2, -1)).conj()
    return s.reshape(*weight.shape[:2], -1).permute(2, 0, 1).contiguous()


def fft_conv3d(x: torch.Tensor, spectrum: torch.Tensor, bias: torch.Tensor, k: int) -> torch.Tensor:
    """``conv3d(x, weight, bias, padding=k // 2)`` by overlap-save: ``(B, Cin, D, H, W)`` -> ``(B, Cout, D, H, W)``."""
    b, cin, *dims = x.shape
    plans = [fft_plan(d, k) for d in dims]
    ns, ms, ts = ([p[i] for p in plans] for i in range(3))
    pads: list[int] = []
    for d, (_, m, t) in zip(reversed(dims), reversed(plans)):
        pads += [k // 2, t * m + k - 1 - d - k // 2]
    xp = F.pad(x, pads)
    sb, sc, sd, sh, sw = xp.stride()
    tiles = xp.as_strided((cin, b, *ts, *ns), (sc, sb, ms[0] * sd, ms[1] * sh, ms[2] * sw, sd, sh, sw))
    spec = torch.fft.rfftn(tiles, dim=(-3, -2, -1))  # (Cin, B, tD, tH, tW, nD, nH, f)
    freq = spec.shape[-3:]
    spec = spec.reshape(cin, -1, freq.numel()).permute(2, 0, 1)  # (F, Cin, B T)
    y = torch.bmm(spectrum, spec).permute(1, 2, 0).reshape(-1, b, *ts, *freq)  # (Cout, B, tD, tH, tW, ...)
    y = torch.fft.irfftn(y, s=ns, dim=(-3, -2, -1))[..., : ms[0], : ms[1], : ms[2]]
    y = y.permute(1, 0, 2, 5, 3, 6, 4, 7).reshape(b, -1, ts[0] * ms[0], ts[1] * ms[1], ts[2] * ms[2])
    return y[:, :, : dims[0], : dims[1], : dims[2]] + bias.view(1, -1, 1, 1, 1)


_BT = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0],
       [0, 4, 0, -5, 0, 1]]  # fmt: skip
_G = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
      [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]  # fmt: skip
_AT = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]


def winograd_filter(weight: torch.Tensor) -> torch.Tensor:
    """``(Cout, Cin, 3, 3)`` -> ``(36, Cout, Cin)`` (computed once)."""
    g = torch.tensor(_G, dtype=torch.float64)
    cout, cin = weight.shape[:2]
    u = torch.kron(g, g) @ weight.double().reshape(cout * cin, 9).T
    return u.reshape(36, cout, cin).to(weight.dtype)


def winograd_conv(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``conv2d(x, weight, bias, padding=1)`` for one ``(1, Cin, H, W)`` input, ``H`` and ``W`` multiples of 4."""
    _, cin, h, w = x.shape
    bt, at = torch.tensor(_BT, dtype=x.dtype), torch.tensor(_AT, dtype=x.dtype)
    th, tw = h // 4, w // 4
    xp = F.pad(x, (1, 1, 1, 1))[0]
    hp, wp = xp.shape[1:]
    tiles = xp.as_strided((6, 6, cin, th, tw), (wp, 1, hp * wp, 4 * wp, 4)).reshape(36, -1)
    v = (torch.kron(bt, bt) @ tiles).view(36, cin, th * tw)
    m = torch.bmm(u, v)
    cout = u.shape[1]
    y = (torch.kron(at, at) @ m.view(36, -1)).view(4, 4, cout, th, tw).permute(2, 3, 0, 4, 1)
    return (y.reshape(cout, h, w) + bias[:, None, None])[None]


# -- measurement -------------------------------------------------------------------------------------------------
def conv_macs(model: nn.Module, run) -> float:
    """Multiply-accumulates of every Conv2d / Conv3d in one call of ``run``."""
    total = [0.0]

    def hook(mod: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        total[0] += out.numel() * mod.weight[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    with torch.no_grad():
        run()
    for h in handles:
        h.remove()
    return total[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from torch.profiler import ProfilerActivity, profile

    from pctalk.keypoints.liveportrait import build_liveportrait

    torch.manual_seed(0)
    print(f"machine: {machine()}")
    model = build_liveportrait().eval()
    images = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        feature = model.appearance(images)
        x_s = model.extract_motion(images).keypoints()
        x_d = x_s + 0.01

        def render() -> torch.Tensor:
            return model.warp_decode(feature, x_s, x_d)

        seconds = timeit(render, repeats=args.repeats)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            render()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if "convolution" in e.key)
    macs = conv_macs(model, render)
    a = torch.randn(2048, 2048)
    peak = 2 * 2048**3 / min(timeit(lambda: a @ a, repeats=1, warmup=0) for _ in range(8)) / 1e9  # the best of 8
    conv_s = seconds * conv / total
    print(f"render (warp + decode), batch 1, fp32: {1000 * seconds:.0f} ms; convolutions {100 * conv / total:.0f}% "
          f"of it, {macs / 1e9:.0f} GMAC -> {2 * macs / conv_s / 1e9:.0f} GFLOP/s; fp32 matmul 2048^3: "
          f"{peak:.0f} GFLOP/s (best of 8)")  # fmt: skip

    dec, dense = model.decoder, model.warping.dense_motion_network
    seg = torch.randn(1, 256, 64, 64)
    rows = []
    for name, block, scale in (("up_0", dec.up_0, 2), ("up_1", dec.up_1, 4)):
        convs = [getattr(block, n).mlp_shared[0] for n in ("norm_0", "norm_1", "norm_s")]
        weight = torch.cat([c.weight for c in convs]).detach()
        bias = torch.cat([c.bias for c in convs]).detach()
        phased = polyphase_weight(weight, scale)
        rows.append((f"polyphase: {name} mlp_shared x3 (256->384, 64^2 -> {64 * scale}^2)", 1,
                     lambda w=weight, b=bias, s=scale: F.conv2d(F.interpolate(seg, scale_factor=s), w, b, padding=1),
                     lambda p=phased, b=bias, s=scale: polyphase_conv(seg, p, b, s, 3)))  # fmt: skip
    prediction = torch.randn(1, dense.mask.in_channels, 16, 64, 64)
    mw, mb = dense.mask.weight.detach(), dense.mask.bias.detach()
    spectrum = fft_spectrum(mw, (16, 64, 64))
    mask = ("overlap-save FFT: mask 7^3 (142->22, 16x64x64)", 1, lambda: F.conv3d(prediction, mw, mb, padding=3))
    rows.append((*mask, lambda: fft_conv3d(prediction, spectrum, mb, 7)))
    for what, conv, size, count in (
        ("G_middle conv_0 (512->512, 64^2)", dec.G_middle_0.conv_0, 64, 12),
        ("G_middle mlp_gamma (128->512, 64^2)", dec.G_middle_0.norm_0.mlp_gamma, 64, 24),
        ("up_1 norm_0.mlp_gamma (128->256, 256^2)", dec.up_1.norm_0.mlp_gamma, 256, 4),
    ):
        x = torch.randn(1, conv.in_channels, size, size)
        w, b = conv.weight.detach(), conv.bias.detach()
        u = winograd_filter(w)
        rows.append((f"Winograd F(4,3): {what}", count, lambda x=x, w=w, b=b: F.conv2d(x, w, b, padding=1),
                     lambda x=x, u=u, b=b: winograd_conv(x, u, b)))  # fmt: skip

    print(f"{'rewrite':<64}{'count':>6}{'direct ms':>11}{'rewrite ms':>12}{'saved ms':>10}{'max |diff|':>12}"
          f"{'/ max |out|':>13}")  # fmt: skip
    saved_total = 0.0
    with torch.no_grad():
        for what, count, direct, rewrite in rows:
            t_direct, t_rewrite = timeit(direct, repeats=args.repeats), timeit(rewrite, repeats=args.repeats)
            out = direct()
            diff = (out - rewrite()).abs().max().item()
            saved = max(t_direct - t_rewrite, 0.0) * count  # a rewrite that is slower is not used
            saved_total += saved
            print(f"{what:<64}{count:>6}{1000 * t_direct:>11.0f}{1000 * t_rewrite:>12.0f}{1000 * saved:>10.0f}"
                  f"{diff:>12.1e}{diff / out.abs().max().item():>13.1e}")  # fmt: skip
    left = seconds - saved_total
    print(f"render with every rewrite that is faster: {1000 * left:.0f} ms ({left / seconds:.2f}x today's eager)")


if __name__ == "__main__":
    main()
