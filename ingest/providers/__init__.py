"""Model providers behind one interface, looked up lazily by the prefix of a model spec."""
