"""What a job tells people: the failure report, the results stream, the summary, the console,
the HTML report and its charts. Reads the state; never the network.
"""
