"""Pages: the HTML result and training pages, SVG curves, and the visdom display."""
