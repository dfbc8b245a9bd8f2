"""``BaseSVfunc`` under machina 0.x's module name."""

from machina.vfuncs.base import BaseSVfunc

__all__ = ["BaseSVfunc"]
