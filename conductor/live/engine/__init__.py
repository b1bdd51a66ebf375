"""Pure decision code of the live conductor: no Django, no clock, no network."""
