"""One renderer per service; `render_all` collects their outputs into one RenderedTree."""

from clustcontrol.render.all import render_all
from clustcontrol.render.base import Output, RenderContext, RenderedTree, Service

__all__ = ["Output", "RenderContext", "RenderedTree", "Service", "render_all"]
