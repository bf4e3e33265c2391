"""YAML the way the project's files need it read: a key given twice is an error.

PyYAML keeps the last of two equal keys silently. In params.yaml a second ``train:`` section
appended at the bottom would discard the first one whole; in a mapping, a second ``hs_code:``
line would read another column than the one its author checked. Both are refused, naming the
lines.
"""

from __future__ import annotations

from typing import Any

import yaml


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} given twice (lines {seen[key]} and {line}); the loader would "
                    "keep the last one and drop the other unsaid",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_unique(text: str) -> Any:
    """``yaml.safe_load`` that refuses a key given twice."""
    return yaml.load(text, Loader=UniqueKeyLoader)


__all__ = ["UniqueKeyLoader", "load_unique"]
