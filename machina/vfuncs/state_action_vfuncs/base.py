"""``BaseSAVfunc`` under machina 0.x's module name."""

from machina.vfuncs.base import BaseSAVfunc

__all__ = ["BaseSAVfunc"]
