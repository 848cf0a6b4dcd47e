"""ServerOrchestrator and the parts it is made of (see facade.py for the map)."""

from .facade import ServerOrchestrator

__all__ = ["ServerOrchestrator"]
