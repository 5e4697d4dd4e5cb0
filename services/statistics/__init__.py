"""Regional statistics: aggregate case counts released under k-anonymity (issue 12, item 3)."""
