"""The hardware model: targets, device maps, pair and tile geometry, placement, energy, the exit controller."""
