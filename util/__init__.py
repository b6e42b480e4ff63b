"""I/O helpers: image conversion, HTML pages, visdom display, metrics, atomic saves."""
