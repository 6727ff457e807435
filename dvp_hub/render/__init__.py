"""Conditioning renderer: a batched z-buffer rasterizer and the three DVP shaders."""
