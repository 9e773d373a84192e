"""accel's benchmarks (speed and quality runs that are not part of the tests); see each module."""
