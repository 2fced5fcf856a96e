-- AWS IoT policies are enforced (issue 12): which certificates a policy is
-- attached to is asked on every delete and by the broker integrations.
CREATE INDEX certificate_policies_policy ON certificate_policies (policy);
