"""Wire formats the intake speaks: one pure module per protocol (bytes + headers in, validated
events out). Nothing here may import Django, touch the database or the queue."""
