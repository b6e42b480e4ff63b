"""Small shared helpers at the bottom of the import order: errors, images and files, registry, distributed,
seeding, signals, and the log formats."""
