"""Built-in visualizers (feature maps, filters, Grad-CAM)."""

from regbench import hookimpl


@hookimpl
def register_visualizers(register):
    pass
