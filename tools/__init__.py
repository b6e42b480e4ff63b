"""Tools that measure and check the code, kept apart from the library (tools/README.md): run from the checkout."""
