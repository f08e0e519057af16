"""Resource providers of the emulator; importing a module registers its routes."""
