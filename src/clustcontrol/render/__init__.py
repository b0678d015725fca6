"""One renderer per service; `render_all` collects their outputs into one RenderedTree."""

from clustcontrol.render.base import Output, RenderContext, RenderedTree, Service
from clustcontrol.render.all import render_all

__all__ = ["Output", "RenderContext", "RenderedTree", "Service", "render_all"]
