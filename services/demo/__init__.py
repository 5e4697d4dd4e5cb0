"""The demo: a short, realistic, synthetic scenario published as agencies would publish it."""
