"""One generation: the two run models (text transmission, coordination) and the generation function
that advances many runs in lockstep, with the completion log.
"""
