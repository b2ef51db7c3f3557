"""bosssim's numbers for sale, reservations, SIM card data and owners (issue 11), through the real client."""
import pytest

from hal.protocols.usim import SimProfile
from transactions.boss import BossRefused, check_request

ID = "11010519491231002X"  # the standard's sample number (valid check digit)


async def test_a_reserved_number_is_held_for_one_customer_and_released_on_abandon(boss):
    numbers = await boss.list_numbers("8888"[-3:], 10)
    assert numbers and all(n.endswith("888") and len(n) == 11 for n in numbers)
    phone = numbers[0]
    first = await boss.reserve_number(phone, "TXN-A", "TXN-A:reserve")
    assert (await boss.reserve_number(phone, "TXN-A", "TXN-A:reserve")).boss_ref == first.boss_ref  # same key, once
    assert phone not in await boss.list_numbers("888", 10)
    with pytest.raises(BossRefused) as exc:
        await boss.reserve_number(phone, "TXN-B", "TXN-B:reserve")
    assert exc.value.code == "number_taken"
    assert (await boss.release_number(phone, "TXN-A", "TXN-A:release")).ok
    assert phone in await boss.list_numbers("888", 10)


async def test_a_new_number_needs_its_reservation_and_records_the_owner(boss):
    phone = (await boss.list_numbers("", 1))[0]
    with pytest.raises(BossRefused) as exc:
        await boss.open_number(phone, "TXN-C", "898600000000000001", ID, "张三丰", "4G-38", "TXN-C:open")
    assert exc.value.code == "not_reserved"
    await boss.reserve_number(phone, "TXN-C", "TXN-C:reserve")
    await boss.open_number(phone, "TXN-C", "898600000000000001", ID, "张三丰", "4G-38", "TXN-C:open2")
    info = await boss.check_number(phone)
    assert info.active and info.holder_masked == "张*"
    assert await boss.owner_check(phone, ID) and not await boss.owner_check(phone, "110101199003074477")


async def test_a_sim_replacement_needs_the_owners_id_and_invalidates_the_old_card(boss, sim):
    phone = "13800138000"  # seeded holder 张伟, ID 11010519491231002X
    with pytest.raises(BossRefused) as exc:
        await boss.replace_sim(phone, "898600000000000002", "110101199003074477", "R1:replace")
    assert exc.value.code == "not_owner"
    await boss.replace_sim(phone, "898600000000000002", ID, "R2:replace")
    r = await boss.replace_sim(phone, "898600000000000003", ID, "R3:replace")
    assert r.detail["invalidated"] == "898600000000000002" and sim.books.sim_of(phone) == "898600000000000003"


async def test_sim_card_data_is_writable_and_stable_per_card(boss):
    data = await boss.sim_card_data("13800138000", "8986000000000000012")
    assert data == await boss.sim_card_data("13800138000", "8986000000000000012")
    profile = SimProfile(imsi=data["imsi"], ki=data["ki"], opc=data["opc"], spn=data["spn"])
    assert len(data["imsi"]) == 15 and data["imsi"].startswith("46000") and len(profile.files()) == 11


async def test_real_name_registration_checks_the_holders_name(boss):
    with pytest.raises(BossRefused) as exc:
        await boss.register_real_name("13912345678", ID, "张三丰", "RN1:register")
    assert exc.value.code == "name_mismatch"
    await boss.register_real_name("13912345678", ID, "李娜", "RN2:register")
    assert await boss.owner_check("13912345678", ID)


def test_the_allow_list_refuses_malformed_identity_requests():
    for op, params in [("owner_check", {"phone": "13800138000", "id_number": "1101051949"}),
                       ("list_numbers", {"suffix": "12a", "limit": 5}),
                       ("sim_card_data", {"phone": "13800138000", "iccid": "x" * 19})]:
        with pytest.raises(BossRefused) as exc:
            check_request(op, params)
        assert exc.value.code == "bad_request"
