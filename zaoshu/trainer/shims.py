"""CPU shims that must run before torchvision / transformers / xtuner are imported.

Why: with the CPU torch wheel pinned by the `train` extra, torchvision's C extension may fail to load;
torchvision then crashes at import (`operator torchvision::nms does not exist`) because its meta
registrations expect the op, and transformers imports torchvision. We define `torchvision::nms` and
`torchvision::qnms` with a plain greedy NMS when they are missing (nothing in LLM fine-tuning calls them).
XTuner also asks `torch.cpu.is_bf16_supported()`, which reports True on CPUs where bf16 autocast is
not usable for training; we make it say False so XTuner stays in fp32 on CPU.

Shims cannot live in an XTuner config: mmengine imports a config's modules lazily, after torchvision.
So `zaoshu.trainer.launch` applies them and then runs the XTuner tool; in-process users call `apply()`.
"""

from __future__ import annotations

_LIBRARY = None  # keeps the torch.library registration alive for the process's lifetime
_APPLIED = False


def _has_op(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _greedy_nms(dets, scores, iou_threshold: float):  # type: ignore[no-untyped-def]
    """Reference non-maximum suppression: indices of kept boxes, by descending score."""
    import torch

    order = torch.argsort(scores, descending=True)
    keep: list[int] = []
    x1, y1, x2, y2 = dets.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    for rank, i in enumerate(order.tolist()):
        if suppressed[rank]:
            continue
        keep.append(i)
        rest = order[rank + 1 :]
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter).clamp(min=1e-12)
        suppressed[rank + 1 :] |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=dets.device)


def apply() -> None:
    """Install the shims once per process; harmless where torchvision's ops already exist."""
    global _LIBRARY, _APPLIED
    if _APPLIED:
        return
    import torch

    missing = [name for name in ("nms", "qnms") if not _has_op(name)]
    if missing:
        _LIBRARY = torch.library.Library("torchvision", "FRAGMENT")
        for name in missing:
            _LIBRARY.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _LIBRARY.impl(name, _greedy_nms, "CompositeExplicitAutograd")
    if not torch.cuda.is_available():
        torch.cpu.is_bf16_supported = lambda *a, **k: False  # type: ignore[assignment]
    _APPLIED = True
