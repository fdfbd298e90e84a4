"""Pen strokes from MNIST digits: the ink thinned to a one-pixel skeleton and traced into polylines, so a
browser test can draw a real digit with mouse or touch paths as a person would.

Usage: from _strokes import digit_strokes; strokes = digit_strokes(image)  # [[(x, y), ...], ...] in pixels
"""
from __future__ import annotations

import numpy as np

INK = 0.35  # a pixel is ink when brighter than this fraction of full white (MNIST's anti-aliased edges are not)

# 8-neighbours clockwise from north, as (row, column) offsets: Zhang-Suen's P2..P9.
_RING = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


def thin(ink: np.ndarray) -> np.ndarray:
    """Zhang and Suen's thinning (CACM 1984): a boolean image reduced to a skeleton one pixel wide,
    its connectivity and end points kept."""
    skeleton = np.pad(np.asarray(ink, bool), 1)
    while True:
        changed = False
        for step in (0, 1):
            ring = [np.roll(skeleton, (-dr, -dc), (0, 1)) for dr, dc in _RING]
            p2, p3, p4, p5, p6, p7, p8, p9 = ring
            count = sum(r.astype(np.int8) for r in ring)
            transitions = sum((~a & b).astype(np.int8) for a, b in zip(ring, ring[1:] + ring[:1]))
            if step == 0:
                gone = ~(p2 & p4 & p6) & ~(p4 & p6 & p8)
            else:
                gone = ~(p2 & p4 & p8) & ~(p2 & p6 & p8)
            remove = skeleton & (count >= 2) & (count <= 6) & (transitions == 1) & gone
            if remove.any():
                skeleton &= ~remove
                changed = True
        if not changed:
            return skeleton[1:-1, 1:-1]


def _edges(skeleton: np.ndarray) -> dict:
    """The skeleton as a graph: pixel -> set of 8-connected neighbours, minus the diagonal shortcuts
    that a 4-connected path already covers (they would be traced as extra one-step strokes)."""
    pixels = {(int(r), int(c)) for r, c in zip(*np.nonzero(skeleton))}
    graph = {p: set() for p in pixels}
    for r, c in pixels:
        for dr, dc in _RING:
            q = (r + dr, c + dc)
            if q not in pixels:
                continue
            if dr and dc and ((r + dr, c) in pixels or (r, c + dc) in pixels):
                continue
            graph[(r, c)].add(q)
    return graph


def trace(skeleton: np.ndarray) -> list:
    """The skeleton's pixels as polylines [[(row, column), ...], ...], each edge drawn once.

    A stroke starts at an end point (one unused edge) when there is one, so open lines are drawn
    end to end; at a fork it goes on in the direction closest to the one it came from.
    """
    graph = _edges(skeleton)
    strokes = []
    for p in sorted(p for p, near in graph.items() if not near):
        strokes.append([p])  # an isolated dot
    while True:
        open_ends = sorted(p for p, near in graph.items() if len(near) == 1)
        rest = sorted(p for p, near in graph.items() if near)
        if not rest:
            return strokes
        path = [open_ends[0] if open_ends else rest[0]]
        while graph[path[-1]]:
            here = path[-1]
            heading = np.subtract(here, path[-2]) if len(path) > 1 else None
            def turn(q, here=here, heading=heading):
                step = np.subtract(q, here)
                return 0.0 if heading is None else -float(np.dot(step, heading)) / np.hypot(*step)
            nxt = min(sorted(graph[here]), key=turn)
            graph[here].discard(nxt)
            graph[nxt].discard(here)
            path.append(nxt)
        strokes.append(path)


def digit_strokes(image: np.ndarray) -> list:
    """Pen strokes that redraw an MNIST digit: [[(x, y), ...], ...] in the image's pixel coordinates
    (pixel centres at +0.5), x to the right, y down, each stroke at least one point.

    Args:
        image: a 28x28 digit, white ink on black (uint8 0..255 or float 0..1).
    """
    pixels = np.asarray(image, np.float32)
    if pixels.max() > 1.0:
        pixels = pixels / 255.0
    skeleton = thin(pixels > INK)
    return [_smooth([(c + 0.5, r + 0.5) for r, c in stroke]) for stroke in trace(skeleton)]


def _smooth(points: list) -> list:
    """The polyline with each inner point averaged with its neighbours (1-2-1), ends kept: a hand's path
    has no pixel staircase."""
    if len(points) < 3:
        return points
    xy = np.asarray(points, np.float64)
    inner = (xy[:-2] + 2 * xy[1:-1] + xy[2:]) / 4
    return [points[0]] + [(float(x), float(y)) for x, y in inner] + [points[-1]]
