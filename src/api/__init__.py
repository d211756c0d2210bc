"""The thin HTTP layer: registrations, events, the delivery log; it starts workflows."""
