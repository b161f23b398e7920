from learnpulse.supervisor import Backoff


def test_supervisor_backoff_doubles_to_the_cap_and_resets_after_a_stable_run() -> None:
    b = Backoff(initial_s=1, max_s=8, stable_s=60)
    delays, d = [], 0.0
    for _ in range(6):
        d = b.next(d, ran_s=2)
        delays.append(d)
    assert delays == [1, 2, 4, 8, 8, 8]
    assert b.next(8, ran_s=61) == 1
