"""Validates Heat templates offline with OpenStack Heat's own engine code;
run by deploy/validate with the Python of its Heat venv.

  heat_check.py REQUEST.json

REQUEST: {"templates": [PATH...], "parameters": {...}, "cloud": {"images":
{NAME: {"min_ram": MIB, "min_disk": GIB}}, "flavors": {NAME: {"ram": MIB,
"disk": GIB, "vcpus": N}}, "networks": [NAME...]}, "interfaces": {"eth0":
"10.1.0.1/24", ...}}. For each template, one JSON line on stdout:
{"template": PATH, "heat": null or the error Heat raised, "unifw": [the
unifw-specific problems]}.

What Heat checks here is what `openstack stack create` checks before it
creates anything: the template is parsed (template_format.parse), the
template version, sections and functions validated (Template.validate), then
a Stack is built with the parameters and Stack.validate() runs: parameter
types and constraints, every resource type looked up in Heat's registry,
every property checked against the resource's schema (unknown, missing
required, wrong type, constraints), every get_param, get_resource and
get_attr reference, the outputs, and each resource's own validate() (Nova's
flavor against the image's min_ram and min_disk, for one). Only the cloud is
fake: the client plugins' lookups answer from CLOUD (a name missing there is
EntityNotFound, as from a real cloud), every service endpoint and Neutron
extension exists, and no request leaves this process.

Heat cannot check a property whose value depends on a resource not created
yet (a port's fixed_ips that name the subnet by get_resource): it skips
them, on a real cloud too. The unifw checks below cover the ones this
project relies on: the firewall's NIC order, fixed IPs, subnets, gateways,
host routes and port security, against the rules file's addresses.
"""

import ipaddress
import json
import logging
import sys
import types
import warnings


def stub_cloud(cloud):
    """Makes Heat's client plugins answer from CLOUD instead of a cloud."""
    from heat.common import exception
    from heat.engine.clients import client_plugin
    from heat.engine.clients.os import glance, nova
    from heat.engine.clients.os import neutron

    def not_found(kind, name):
        raise exception.EntityNotFound(entity=kind, name=name)

    def image(_, name):
        spec = cloud["images"].get(name)
        if spec is None:
            not_found("Image", name)
        return types.SimpleNamespace(id=f"image-{name}", name=name, status="active", **spec)

    def flavor(_, name):
        spec = cloud["flavors"].get(name)
        if spec is None:
            not_found("Flavor", name)
        return types.SimpleNamespace(id=f"flavor-{name}", name=name, **spec)

    def neutron_id(_, kind, name, cmd_resource=None):
        if kind == "network" and name in cloud["networks"]:
            return f"network-{name}"
        if kind == "port" and name in cloud.get("ports", []):
            return f"port-{name}"
        not_found(kind.capitalize(), name)

    def is_not_found(_, ex):
        return isinstance(ex, exception.EntityNotFound)

    client_plugin.ClientPlugin.does_endpoint_exist = lambda self, service_type, service_name: True
    glance.GlanceClientPlugin.get_image = image
    glance.GlanceClientPlugin.find_image_by_name_or_id = lambda self, name: image(self, name).id
    glance.GlanceClientPlugin.is_not_found = is_not_found
    nova.NovaClientPlugin.get_flavor = flavor
    nova.NovaClientPlugin.find_flavor_by_name_or_id = lambda self, name: flavor(self, name).id
    nova.NovaClientPlugin.is_not_found = is_not_found
    nova.NovaClientPlugin.is_version_supported = lambda self, version: True
    nova.NovaClientPlugin.absolute_limits = lambda self: {"maxServerMeta": 128, "maxPersonality": 5,
                                                          "maxPersonalitySize": 10240}
    neutron.NeutronClientPlugin.find_resourceid_by_name_or_id = neutron_id
    neutron.NeutronClientPlugin.has_extension = lambda self, alias: True
    neutron.NeutronClientPlugin.is_not_found = is_not_found


def heat_validate(text, parameters):
    """None if Heat accepts template TEXT with PARAMETERS, else the error
    (exception class and message); also the parsed template or None."""
    from heat.common import context, template_format
    from heat.engine import environment, stack, template

    try:
        parsed = template_format.parse(text)
        tmpl = template.Template(parsed, env=environment.Environment({"parameters": parameters}))
        tmpl.validate()
        ctx = context.RequestContext(user_id="unifw-validate", project_id="unifw-validate", is_admin=False)
        stack.Stack(ctx, "unifw-validate", tmpl).validate()
    except Exception as exc:  # Heat's errors have no common base; every one is a rejection.
        return f"{type(exc).__name__}: {exc}", None
    return None, parsed


def reference(value, function):
    """The name in {FUNCTION: NAME}, or None."""
    if isinstance(value, dict) and list(value) == [function] and isinstance(value[function], str):
        return value[function]
    return None


def check_unifw(parsed, interfaces):
    """The problems (strings) of template PARSED against the project's
    expectations: the firewall's first two NICs on the rules' eth0 and eth1
    addresses, port security off there, their subnets steering the other
    side through the firewall, the identity in the metadata, eth2 on DHCP."""
    resources = parsed.get("resources") or {}
    problems = []
    firewall = resources.get("firewall") or {}
    props = firewall.get("properties") or {}
    if firewall.get("type") != "OS::Nova::Server":
        return ["no OS::Nova::Server resource named firewall"]
    if (props.get("metadata") or {}).get("unifw_rules_identity") != {"get_param": "rules_identity"}:
        problems.append("firewall: metadata unifw_rules_identity is not {get_param: rules_identity}")
    networks = props.get("networks") or []
    ports = [reference(entry.get("port"), "get_resource") if isinstance(entry, dict) else None for entry in networks]
    wanted = [name for name in ("eth0", "eth1", "eth2") if name in interfaces]
    if len(ports) != len(wanted) or None in ports:
        return problems + [f"firewall: networks must be {len(wanted)} ports by get_resource, one per interface of "
                           f"the rules ({', '.join(wanted)}), in NIC order"]
    subnets = {}
    for nic, port_name in zip(wanted, ports):
        port = (resources.get(port_name) or {}).get("properties") or {}
        fixed = port.get("fixed_ips") or [{}]
        subnet_name = reference(fixed[0].get("subnet"), "get_resource")
        subnet = (resources.get(subnet_name) or {}).get("properties") or {}
        address = interfaces[nic]
        if address in ("dhcp", "none"):
            if address == "dhcp" and subnet.get("enable_dhcp") is False:
                problems.append(f"{port_name} ({nic}): the rules ask DHCP, its subnet has enable_dhcp false")
            continue
        interface = ipaddress.ip_interface(address)
        subnets[nic] = (port_name, subnet_name, subnet, interface)
        if fixed[0].get("ip_address") != str(interface.ip):
            problems.append(f"{port_name} ({nic}): fixed IP {fixed[0].get('ip_address')}, the rules say "
                            f"{interface.ip}")
        if port.get("port_security_enabled") is not False:
            problems.append(f"{port_name} ({nic}): port_security_enabled must be false (Neutron would drop the "
                            "packets the firewall forwards)")
        if subnet.get("cidr") != str(interface.network):
            problems.append(f"{subnet_name}: cidr {subnet.get('cidr')}, the rules put {nic} in {interface.network}")
        if subnet.get("gateway_ip") != str(interface.ip):
            problems.append(f"{subnet_name}: gateway_ip {subnet.get('gateway_ip')}, expected the firewall's "
                            f"{interface.ip}")
    if "eth0" in subnets and "eth1" in subnets:
        for near, far in (("eth0", "eth1"), ("eth1", "eth0")):
            _, subnet_name, subnet, interface = subnets[near]
            route = {"destination": str(subnets[far][3].network), "nexthop": str(interface.ip)}
            if route not in (subnet.get("host_routes") or []):
                problems.append(f"{subnet_name}: no host route {route['destination']} via {route['nexthop']}")
    return problems


def check_pool(parsed, size=3):
    """The problems of the pool template PARSED (unifw-pool.yaml): each
    member's NICs in the order of a wire pair (ingress, egress, then
    management), the data ports without addresses or port security, the
    port pair on the member's own ports, every pair in the group, and a
    symmetric chain (both directions of a flow through one instance)."""
    resources = parsed.get("resources") or {}
    problems = []
    for k in range(size):
        server = (resources.get(f"member_{k}") or {}).get("properties") or {}
        ports = [reference(n.get("port"), "get_resource") if isinstance(n, dict) else None
                 for n in server.get("networks") or []]
        wanted = [f"member_{k}_ingress", f"member_{k}_egress", f"member_{k}_management"]
        if ports != wanted:
            problems.append(f"member_{k}: networks must be the ports {', '.join(wanted)} in this order (eth0, eth1 "
                            f"are the wire pair), not {ports}")
        if (server.get("metadata") or {}).get("unifw_rules_identity") != {"get_param": "rules_identity"}:
            problems.append(f"member_{k}: metadata unifw_rules_identity is not {{get_param: rules_identity}}")
        for side in ("ingress", "egress"):
            port = (resources.get(f"member_{k}_{side}") or {}).get("properties") or {}
            if port.get("port_security_enabled") is not False:
                problems.append(f"member_{k}_{side}: port_security_enabled must be false (the instance forwards "
                                "frames that are not its own)")
            if port.get("fixed_ips"):
                problems.append(f"member_{k}_{side}: a wire side has no address (no fixed_ips)")
        pair = (resources.get(f"member_{k}_pair") or {}).get("properties") or {}
        sides = (reference(pair.get("ingress"), "get_resource"), reference(pair.get("egress"), "get_resource"))
        if sides != (f"member_{k}_ingress", f"member_{k}_egress"):
            problems.append(f"member_{k}_pair: ingress and egress must be member_{k}_ingress and member_{k}_egress, "
                            f"not {sides}")
        group = json.dumps((resources.get("pool_group") or {}).get("properties") or {})
        if f'"get_resource": "member_{k}_pair"' not in group:
            problems.append(f"pool_group: member_{k}_pair is not in port_pairs")
    chain = (resources.get("port_chain") or {}).get("properties") or {}
    if (chain.get("chain_parameters") or {}).get("symmetric") is not True:
        problems.append("port_chain: chain_parameters must have symmetric: true (replies through the same instance)")
    return problems


def main():
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    with open(sys.argv[1]) as f:
        request = json.load(f)
    from oslo_config import cfg
    from heat.common import config  # noqa: F401  (registers Heat's options)
    from heat.engine import resources

    cfg.CONF([], project="heat", default_config_files=[], default_config_dirs=[])
    resources.initialise()
    stub_cloud(request["cloud"])
    for path in request["templates"]:
        with open(path) as f:
            text = f.read()
        error, parsed = heat_validate(text, request["parameters"])
        try:
            check = check_pool if "port_chain" in (parsed or {}).get("resources", {}) else None
            if parsed is None:
                problems = []
            elif check is not None:
                problems = check(parsed)
            else:
                problems = check_unifw(parsed, request["interfaces"])
        except Exception as exc:  # a template shaped unlike ours: say so, do not crash
            problems = [f"template not shaped as expected ({type(exc).__name__}: {exc})"]
        print(json.dumps({"template": path, "heat": error, "unifw": problems}), flush=True)


if __name__ == "__main__":
    main()
