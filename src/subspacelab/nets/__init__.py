"""Small backbones and the shared Lightning training entry point."""
