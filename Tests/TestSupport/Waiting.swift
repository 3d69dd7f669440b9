/// Polls `condition` until it holds or `timeout` passes.
public func eventually(timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}

/// Whether `condition` holds at every check (every 100 ms) for `duration`.
public func holds(for duration: Duration, _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + duration
    while ContinuousClock.now < deadline {
        guard try await condition() else { return false }
        try await Task.sleep(for: .milliseconds(100))
    }
    return true
}

/// How long `condition` took to hold, polling every 50 ms; nil when it did not within `timeout`.
public func timeUntil(timeout: Duration, _ condition: () async throws -> Bool) async throws -> Duration? {
    let start = ContinuousClock.now
    return try await eventually(timeout: timeout, condition) ? ContinuousClock.now - start : nil
}
