"""The sliding window of closed groups the model looks at: the newest groups whose canvases fit the budget."""
from __future__ import annotations

from collections import deque

from ov2_ros.codec.types import CodecWindow, FrameGroup


class WindowBuffer:
    """Keeps the newest closed groups holding at most ``max_canvases`` canvases in total.

    With fixed 4-canvas groups this is the last ``window_canvases / 4`` groups; with variable P allocation the number
    of groups varies. A group larger than the whole budget is kept alone (the model still needs something to see).
    Everything in one buffer has one canvas size: the tokenizer resets it on a resolution change.
    """

    def __init__(self, max_canvases: int):
        self.max_canvases = max_canvases
        self._groups: deque[FrameGroup] = deque()
        self._canvases = 0

    def __len__(self) -> int:
        return len(self._groups)

    @property
    def num_canvases(self) -> int:
        return self._canvases

    def add(self, group: FrameGroup) -> None:
        self._groups.append(group)
        self._canvases += len(group.canvases)
        while len(self._groups) > 1 and self._canvases > self.max_canvases:
            self._canvases -= len(self._groups.popleft().canvases)

    def reset(self) -> None:
        self._groups.clear()
        self._canvases = 0

    def window(self, canvas_size: tuple[int, int], source_size: tuple[int, int], fps: float,
               patch_size: int) -> CodecWindow | None:
        if not self._groups:
            return None
        return CodecWindow(groups=tuple(self._groups), canvas_size=canvas_size, source_size=source_size, fps=fps,
                           patch_size=patch_size)
