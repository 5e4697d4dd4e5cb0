"""Data protection shared by every service: what each agency may be told (disclosure), and
personal data sealed at rest under a key per person that erasure destroys (crypto-shredding)."""
