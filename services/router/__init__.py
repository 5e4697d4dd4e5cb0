"""Router: decides, by a declarative policy, which agencies must act on each valid event."""
