"""Pure decisions over plain data: no SQLAlchemy, no click, no I/O, no clock."""
