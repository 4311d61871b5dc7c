"""What queries call: model predicates, reference models, user-registered functions."""
