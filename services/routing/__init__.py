"""The routing policy and the agency registry, as plain domain code shared by the services that
need them: the router decides deliveries with it, the cases service assigns agencies from the
same decision, and set-up derives each agency's topics and credentials from its registry."""
