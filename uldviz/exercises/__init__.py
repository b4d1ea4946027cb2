"""Self-checking exercises: each checker says "right" or what is wrong, never the answer itself."""

from uldviz.exercises._core import Feedback

__all__ = ["Feedback"]
