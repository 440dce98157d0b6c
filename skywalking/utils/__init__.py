"""Small helpers kept under upstream's module names."""
