"""Small helpers every part of the scoring controller uses: observers that do not keep their owner
alive, and the nodes of a class in a scene."""

from __future__ import annotations

import weakref
from typing import Any, List


def weak_observer(method):
    """An observer callback that does not keep the controller alive (no scene <-> controller cycle,
    whose collection would leave a half-cleared controller still observing)."""
    ref = weakref.WeakMethod(method)

    def call(caller=None, event=None):
        bound = ref()
        if bound is not None:
            bound(caller, event)
    return call


def nodes_of_class(scene, class_name: str) -> List[Any]:
    """The scene's nodes of one MRML class, in scene order."""
    collection = scene.GetNodesByClass(class_name)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
