"""Tools are listed by dotted path in settings.AGENT_TOOLS and imported on first use."""
from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.utils.module_loading import import_string

from agent.tools.base import BaseTool


@lru_cache(maxsize=1)
def _load(paths: tuple[tuple[str, str], ...]) -> dict[str, BaseTool]:
    tools = {}
    for name, dotted in paths:
        tool = import_string(dotted)()
        if tool.name != name:
            raise ValueError(f"AGENT_TOOLS[{name!r}] points at a tool named {tool.name!r}")
        tools[name] = tool
    return tools


def enabled_tools() -> dict[str, BaseTool]:
    """The tools switched on in settings, by name."""
    paths = tuple((n, p) for n, p in settings.AGENT_TOOLS.items() if settings.AGENT_TOOLS_ENABLED.get(n, False))
    return _load(paths)


def get_tool(name: str) -> BaseTool | None:
    return enabled_tools().get(name)


def llm_tools() -> list[BaseTool]:
    return [tool for tool in enabled_tools().values() if tool.offered_to_llm]
