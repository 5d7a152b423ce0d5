"""Who is calling and what they may touch: signed tokens and the guards that check them (on ``base``)."""
