"""Who may do what on the broker: each service's and each agency's Kafka principal, its topics
and its ACLs (`plan`), and the set-up command that makes the broker enforce them (`broker`)."""
