"""Draw the procedural style images that ship with metastyle.

The few-shot demo needs style targets on a fresh machine without downloading
third-party artwork, so the project draws its own: six deterministic 512x512
RGB textures, each rich at several scales because they feed Gram-matrix style
losses. Needs only numpy and Pillow.

Usage: python styles/make_styles.py [--out DIR]
"""

import argparse
import io
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw

S = 512
MAX_BYTES = 600_000
YY, XX = np.mgrid[0:S, 0:S].astype(np.float32)


def fbm(rng, base=4, octaves=4):
    """Fractal value noise in [0, 1]: bicubic-upsampled random grids, amplitude halving per octave."""
    out = np.zeros((S, S), np.float32)
    for o in range(octaves):
        n = base * 2**o + 1
        grid = Image.fromarray(rng.random((n, n), dtype=np.float32), "F")
        out += np.asarray(grid.resize((S, S), Image.BICUBIC)) * 0.5**o
    return (out - out.min()) / (out.max() - out.min())


def blur(a, sigma):
    """Gaussian blur of a float field (FFT, reflect-padded so edges do not wrap)."""
    p = int(3 * sigma) + 1
    b = np.pad(a, p, mode="reflect")
    fy = np.fft.fftfreq(b.shape[0])[:, None]
    fx = np.fft.rfftfreq(b.shape[1])[None, :]
    k = np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))
    return np.fft.irfft2(np.fft.rfft2(b) * k, s=b.shape)[p:-p, p:-p].astype(np.float32)


def palette_map(v, colors):
    """Map a scalar field through evenly spaced colour stops after rank-equalising it."""
    ranks = np.empty(v.size, np.float32)
    ranks[np.argsort(v, axis=None)] = np.linspace(0, 1, v.size, dtype=np.float32)
    stops = np.linspace(0, 1, len(colors))
    colors = np.asarray(colors, np.float32)
    return np.stack([np.interp(ranks, stops, colors[:, c]) for c in range(3)], -1).reshape(*v.shape, 3)


def trace(u, v, seeds, steps, h):
    """Midpoint-integrate streamlines of the unit field (u, v) from (N, 2) xy seeds -> (N, steps+1, 2)."""

    def direction(p):
        ix = np.clip(p[:, 0], 0, S - 1).astype(int)
        iy = np.clip(p[:, 1], 0, S - 1).astype(int)
        return np.stack([u[iy, ix], v[iy, ix]], 1)

    path = [seeds]
    for _ in range(steps):
        p = path[-1]
        path.append(p + h * direction(p + 0.5 * h * direction(p)))
    return np.stack(path, 1)


def to_image(rgb):
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def mosaic(rng):
    """Stained glass: jittered Voronoi tiles, mottled jewel-tone glass, dark lead cames."""
    cells = 13
    grid = np.stack(np.mgrid[0:cells, 0:cells], -1).reshape(-1, 2)[:, ::-1]
    seeds = ((grid + 0.5 + rng.uniform(-0.42, 0.42, grid.shape)) * (S / cells)).astype(np.float32)
    pix = np.stack([XX.ravel(), YY.ravel()], 1)
    near = np.empty((S * S, 2), np.int64)
    dsq = np.empty((S * S, 2), np.float32)
    for i in range(0, S * S, 16384):
        d = ((pix[i : i + 16384, None] - seeds[None]) ** 2).sum(-1)
        idx = np.argpartition(d, 1, axis=1)[:, :2]
        dd = np.take_along_axis(d, idx, 1)
        order = np.argsort(dd, 1)
        near[i : i + 16384] = np.take_along_axis(idx, order, 1)
        dsq[i : i + 16384] = np.take_along_axis(dd, order, 1)
    gap = np.linalg.norm(seeds[near[:, 0]] - seeds[near[:, 1]], axis=1)
    edge = ((dsq[:, 1] - dsq[:, 0]) / (2 * gap)).reshape(S, S)  # distance to the nearest tile border
    tile = near[:, 0].reshape(S, S)

    jewels = np.array(
        [(150, 18, 35), (200, 60, 20), (240, 170, 30), (20, 120, 70), (30, 170, 160),
         (20, 70, 180), (60, 30, 140), (130, 40, 150), (235, 215, 160)], np.float32)
    design = fbm(rng, base=3, octaves=2)
    sx, sy = seeds.astype(int).T
    pick = (design[sy, sx] * len(jewels) * 1.5 + rng.normal(0, 1.0, len(seeds))).astype(int) % len(jewels)
    rgb = (jewels[pick] * rng.uniform(0.7, 1.15, (len(seeds), 1)))[tile]
    glass = 0.75 + 0.5 * fbm(rng, base=40, octaves=3)
    bevel = 0.5 + 0.5 * np.clip(edge / 16, 0, 1) ** 0.5
    backlight = 0.8 + 0.4 * fbm(rng, base=2, octaves=2)
    rgb *= (glass * bevel * backlight)[..., None]
    came = np.clip((edge - 2.4) / 1.2, 0, 1)[..., None]
    lead = np.array([32, 30, 28], np.float32) + 25 * np.exp(-((edge - 0.8) ** 2))[..., None]
    return to_image(rgb * came + lead * (1 - came))


def brushstrokes(rng):
    """Coarse-to-fine oriented bristle strokes that follow a smooth angle field, over a blurred underpainting."""
    angle = fbm(rng, base=2, octaves=2) * 1.6 * np.pi
    u, v = np.cos(angle), np.sin(angle)
    paint = palette_map(fbm(rng, base=3, octaves=4), [
        (30, 40, 85), (50, 85, 150), (95, 145, 185), (60, 115, 95), (150, 160, 85),
        (225, 185, 95), (240, 222, 180), (215, 120, 70), (150, 60, 70)])
    img = to_image(np.stack([blur(paint[..., c], 8) for c in range(3)], -1))
    draw = ImageDraw.Draw(img, "RGBA")
    for count, length, width, alpha in ((350, 90, 28, 130), (1300, 48, 14, 165), (3200, 22, 6, 200)):
        paths = trace(u, v, rng.random((count, 2)) * S, 6, length / 6)
        tang = np.gradient(paths, axis=1)
        normal = np.stack([-tang[..., 1], tang[..., 0]], -1) / (np.linalg.norm(tang, axis=-1, keepdims=True) + 1e-6)
        bristles = max(3, width // 4)
        for path, nrm in zip(paths, normal):
            x, y = np.clip(path[0], 0, S - 1).astype(int)
            base = paint[y, x] + rng.normal(0, 16, 3)
            for off in np.linspace(-0.5, 0.5, bristles) * width:
                c = np.clip(base + rng.normal(0, 12, 3), 0, 255).astype(int)
                pts = [tuple(p) for p in path + off * nrm]
                draw.line(pts, fill=(*c, alpha), width=max(2, int(1.6 * width / bristles)), joint="curve")
    return img


def op_art(rng):
    """Moire: two chirped concentric ring systems multiplied (XOR), bent by a lens bulge and noise warp."""
    n = 2 * S  # supersample, then downscale for anti-aliasing
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / n
    warp = np.asarray(Image.fromarray(fbm(rng, base=3, octaves=3), "F").resize((n, n), Image.BICUBIC)) - 0.5
    lens = np.exp(-((x - 0.55) ** 2 + (y - 0.5) ** 2) / 0.06)
    x, y = x + 0.25 * lens * (x - 0.55) + 0.03 * warp, y + 0.25 * lens * (y - 0.5) - 0.03 * warp
    r1 = np.hypot(x - 0.28, y - 0.3)
    r2 = np.hypot(x - 0.74, y - 0.68)
    v = np.sin(2 * np.pi * 40 * r1**1.25) * np.sin(2 * np.pi * 34 * r2**1.2)
    ink = Image.fromarray(np.clip(0.5 + v * 6, 0, 1), "F").resize((S, S), Image.BOX)
    ink = (np.round(np.asarray(ink) * 16) / 16)[..., None]  # 17 grey levels: smooth edges, small PNG
    return to_image(ink * np.array([242, 236, 222], np.float32) + (1 - ink) * np.array([18, 18, 26], np.float32))


def _ink_stroke(draw, ctrl, width, rng, bristles=9):
    """One tapering calligraphic stroke along a cubic Bezier; bristles run dry at different points."""
    t = np.linspace(0, 1, 80)[:, None]
    p0, p1, p2, p3 = np.asarray(ctrl, np.float32)
    pts = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
    tang = np.gradient(pts, axis=0)
    normal = np.stack([-tang[:, 1], tang[:, 0]], 1) / (np.linalg.norm(tang, axis=1, keepdims=True) + 1e-6)
    press = width * np.minimum(1, t[:, 0] / 0.08) ** 0.5 * (1.05 - t[:, 0]) ** 0.5
    for off in np.linspace(-0.45, 0.45, bristles):
        end = int(len(t) * rng.uniform(0.55, 1.0))
        tone = int(rng.uniform(150, 255))
        line = pts + (off * press)[:, None] * normal
        for i in range(end - 1):
            if rng.random() < 0.6 * (i / len(t)) ** 3:  # dry brush: bristles skip more towards the tail
                continue
            w = max(1, int(2.2 * press[i] / bristles))
            draw.line([tuple(line[i]), tuple(line[i + 1])], fill=tone, width=w)
            draw.ellipse([line[i][0] - w / 2, line[i][1] - w / 2, line[i][0] + w / 2, line[i][1] + w / 2], fill=tone)


def ink_wash(rng):
    """Sumi-e: misty mountain washes with granulation and edge blooms, dry-brush strokes, red seal, on paper."""
    paper = np.array([238, 231, 212], np.float32) * (0.95 + 0.07 * fbm(rng, base=96, octaves=2))[..., None]
    density = np.zeros((S, S), np.float32)
    for i, (top, fade, strength, soft) in enumerate(
        ((0.30, 70, 0.30, 7), (0.45, 50, 0.55, 4), (0.60, 38, 0.85, 2.5), (0.78, 28, 1.25, 1.2))
    ):
        ridge = S * (top + 0.22 * (fbm(rng, base=2 + i, octaves=5)[0] - 0.5))
        depth = np.maximum(YY - ridge[None, :], 0)  # 0 above the ridge line
        wash = np.where(depth > 0, np.exp(-depth / fade) + 0.7 * np.exp(-depth / 4), 0)  # body + edge bloom
        wash *= 0.55 + 0.9 * fbm(rng, base=20, octaves=4)
        density += strength * blur(wash.astype(np.float32), soft)

    ink = Image.new("L", (S, S), 0)
    draw = ImageDraw.Draw(ink)
    _ink_stroke(draw, [(-20, 150), (120, 60), (260, 140), (400, 70)], 18, rng, bristles=11)
    for x0, y0, x3, y3 in ((130, 95, 210, 10), (250, 115, 300, 200), (330, 90, 440, 120)):
        _ink_stroke(draw, [(x0, y0), ((x0 + x3) / 2, y0 - 25), (x3, (y0 + y3) / 2), (x3, y3)], 8, rng, bristles=6)
    for x0 in np.sort(rng.uniform(300, 500, 7)):
        lean, top = rng.uniform(-70, 60), rng.uniform(280, 420)
        _ink_stroke(draw, [(x0, S + 5), (x0, (S + top) / 2), (x0 + lean / 2, top + 30), (x0 + lean, top)],
                    rng.uniform(6, 12), rng, bristles=7)
    density += 3.5 * blur(np.asarray(ink, np.float32) / 255, 0.6)

    rgb = paper * np.exp(-density[..., None] * np.array([1.0, 0.93, 0.8], np.float32))
    sx, sy = np.abs(XX - 56), YY - 440  # red seal with the character for mountain carved out in paper white
    seal = (sx < 20) & (np.abs(sy) < 20) & (fbm(rng, base=48, octaves=1) > 0.15)
    glyph = ((sy > -13) & (sy < 10) & (sx < 2)) | ((sy > -4) & (sy < 10) & (np.abs(sx - 11) < 2))
    glyph |= (np.abs(sy - 9) < 2) & (sx < 13)
    rgb[seal & ~glyph] = (178, 38, 32)
    return to_image(rgb)


def pointillism(rng):
    """Seurat-like: dense saturated dots, some in the complementary hue, sampled from a smooth landscape."""
    x, y = XX / S, YY / S
    dusk = np.clip(y / 0.55, 0, 1)[..., None]
    sky = (1 - dusk) * np.array([70, 120, 210], np.float32) + dusk * np.array([250, 205, 140], np.float32)
    sky += np.exp(-((x - 0.7) ** 2 + (y - 0.28) ** 2) / 0.012)[..., None] * np.array([60, 50, -40], np.float32)
    hill = 0.47 + 0.14 * (fbm(rng, base=2, octaves=4)[0] - 0.5)
    meadow = palette_map(fbm(rng, base=6, octaves=3), [(30, 90, 45), (70, 140, 50), (160, 185, 70), (215, 180, 60)])
    water = np.array([40, 90, 175], np.float32) + (1 - y[..., None]) * np.array([30, 40, 40], np.float32)
    glint = np.exp(-(((x - 0.7) / 0.06) ** 2)) * (0.5 + 0.5 * np.sin(y * 160 + 6 * fbm(rng, base=8, octaves=2)))
    water += glint[..., None] * np.array([210, 130, 0], np.float32)
    scene = np.where((y > hill[None, :])[..., None], meadow, sky)
    scene = np.where((y > 0.74)[..., None], water, scene)
    scene = np.stack([blur(scene[..., c], 3) for c in range(3)], -1)

    img = to_image(0.45 * scene + 0.55 * np.array([245, 240, 226], np.float32))
    draw = ImageDraw.Draw(img)
    n = 42000
    xy = rng.random((n, 2)) * S
    rad = rng.uniform(1.8, 3.4, n)
    base = scene[xy[:, 1].astype(int), xy[:, 0].astype(int)]
    mean = base.mean(1, keepdims=True)
    vivid = mean + 1.8 * (base - mean) + rng.normal(0, 22, (n, 3))
    comp = vivid.max(1, keepdims=True) + vivid.min(1, keepdims=True) - vivid
    col = np.clip(np.where((rng.random(n) < 0.18)[:, None], comp, vivid), 0, 255).astype(int)
    for (px, py), r, c in zip(xy, rad, col):
        draw.ellipse((px - r, py - r, px + r, py + r), fill=tuple(c))
    return img


def flow_swirls(rng):
    """Van Gogh-like night: short outlined dashes advected along a curl-noise field with star vortices."""
    stars = np.column_stack([rng.uniform(50, S - 50, 6), rng.uniform(50, S - 50, 6), rng.uniform(25, 60, 6)])
    psi = 900 * fbm(rng, base=2, octaves=3)
    for sx, sy, r in stars:
        psi += 12 * r * np.exp(-((XX - sx) ** 2 + (YY - sy) ** 2) / (2 * r * r)) * rng.choice([-1, 1])
    dy, dx = np.gradient(psi)
    speed = np.hypot(dx, dy) + 1e-6
    u, v = dy / speed, -dx / speed  # curl of the stream function: divergence-free swirls

    glow = np.zeros((S, S), np.float32)
    for sx, sy, r in stars:
        glow = np.maximum(glow, np.exp(-((XX - sx) ** 2 + (YY - sy) ** 2) / (1.2 * r * r)))
    sky = palette_map(fbm(rng, base=3, octaves=3), [(10, 20, 70), (25, 55, 130), (45, 95, 170)])
    img = to_image(sky)
    draw = ImageDraw.Draw(img, "RGBA")
    blues = np.array([(20, 40, 115), (35, 75, 165), (70, 130, 210), (130, 185, 230), (215, 230, 240)], np.float32)
    yellows = np.array([(250, 215, 70), (240, 180, 40), (255, 240, 160)], np.float32)
    shade = fbm(rng, base=4, octaves=3)
    for count, steps, width in ((900, 14, 8), (2200, 9, 5), (2600, 5, 3)):
        paths = trace(u, v, rng.random((count, 2)) * S, steps, 2.5)
        for path in paths:
            x, y = np.clip(path[0], 0, S - 1).astype(int)
            if rng.random() < glow[y, x] ** 0.7:
                c = yellows[rng.integers(len(yellows))]
            else:
                c = blues[min(len(blues) - 1, int(shade[y, x] * len(blues) + rng.normal(0, 0.8)))]
            pts = [tuple(p) for p in path]
            draw.line(pts, fill=(*(0.55 * c).astype(int), 230), width=width + 2, joint="curve")
            tint = np.clip(c + rng.normal(0, 12, 3), 0, 255).astype(int)
            draw.line(pts, fill=(*tint, 235), width=width, joint="curve")
    for sx, sy, r in stars:
        for k, c in enumerate(((240, 170, 40), (255, 225, 90), (255, 248, 200))):
            rr = 0.3 * r * (1 - 0.3 * k)
            draw.ellipse((sx - rr, sy - rr, sx + rr, sy + rr), fill=(*c, 235))
    return img


STYLES = {
    "mosaic": (mosaic, 11),
    "brushstrokes": (brushstrokes, 12),
    "op_art": (op_art, 13),
    "ink_wash": (ink_wash, 14),
    "pointillism": (pointillism, 15),
    "flow_swirls": (flow_swirls, 16),
}


def save_png(img, path):
    """Write a PNG atomically (temp file in the same folder, then os.replace); return its size in bytes."""
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return os.path.getsize(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)), help="output folder")
    out = parser.parse_args().out
    os.makedirs(out, exist_ok=True)
    for name, (draw_style, seed) in STYLES.items():
        start = time.perf_counter()
        size = save_png(draw_style(np.random.default_rng(seed)), os.path.join(out, f"{name}.png"))
        print(f"{name}.png  {size / 1024:.0f} KiB  {time.perf_counter() - start:.1f}s")
        if size > MAX_BYTES:
            print(f"warning: {name}.png is over the {MAX_BYTES // 1000} KB budget for committed styles", file=sys.stderr)


if __name__ == "__main__":
    main()
