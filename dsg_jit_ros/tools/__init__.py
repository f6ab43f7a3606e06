"""Data tools beside the SLAM node: a synthetic demo world and bag writer
(``demo_world``, ``make_demo_bag``) and trajectory evaluation (``evaluate``)."""
